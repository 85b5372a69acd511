"""``python -m services.trainer``: run the trainer service until SIGTERM."""

from libs.runtime import run
from services.trainer.app import build
from services.trainer.settings import TrainerSettings

if __name__ == "__main__":
    run(TrainerSettings, build)
