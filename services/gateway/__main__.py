"""``python -m services.gateway``: run the gateway service until SIGTERM."""

from libs.runtime import run
from services.gateway.app import build
from services.gateway.settings import GatewaySettings


def main() -> None:
    try:  # uvloop: fewer event-loop cycles per request on the hot path, when installed
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.install()
    run(GatewaySettings, build)


if __name__ == "__main__":
    main()
