"""``python -m services.featurestore``: run the featurestore service until SIGTERM."""

from libs.runtime import run
from services.featurestore.app import build
from services.featurestore.settings import FeatureStoreSettings

if __name__ == "__main__":
    run(FeatureStoreSettings, build)
