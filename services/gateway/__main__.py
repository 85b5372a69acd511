"""``python -m services.gateway``: run the gateway service until SIGTERM."""
from libs.runtime import run
from services.gateway.app import build
from services.gateway.settings import GatewaySettings

if __name__ == "__main__":
    run(GatewaySettings, build)
