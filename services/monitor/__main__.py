"""``python -m services.monitor``: run the monitor service until SIGTERM."""

from libs.runtime import run
from services.monitor.app import build
from services.monitor.settings import MonitorSettings

if __name__ == "__main__":
    run(MonitorSettings, build)
