"""``python -m services.ingestion``: run the ingestion service until SIGTERM."""

from libs.runtime import run
from services.ingestion.app import build
from services.ingestion.settings import IngestionSettings

if __name__ == "__main__":
    run(IngestionSettings, build)
