"""``python -m services.registry``: run the registry service until SIGTERM."""

from libs.runtime import run
from services.registry.app import build
from services.registry.settings import RegistrySettings

if __name__ == "__main__":
    run(RegistrySettings, build)
