"""``python -m services.evaluator``: run the evaluator service until SIGTERM."""

from libs.runtime import run
from services.evaluator.app import build
from services.evaluator.settings import EvaluatorSettings

if __name__ == "__main__":
    run(EvaluatorSettings, build)
