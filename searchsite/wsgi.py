import logging
import os
import threading

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")
application = get_wsgi_application()


def _warm_up_encoder() -> None:
    # Load the active model's towers now, not on a shopper's first query (seconds).
    try:
        from embeddings.models import EmbeddingModel
        from embeddings.registry import encoder_for

        model = EmbeddingModel.active()
        if model is not None:
            encoder_for(model).encode_texts(["warm up"])
    except Exception:  # a cold first query is better than a web worker that fails to start
        logging.getLogger(__name__).exception("encoder warm-up failed")


if os.environ.get("WARM_UP_ENCODER", "1") not in ("0", "false", "no"):
    threading.Thread(target=_warm_up_encoder, name="encoder-warm-up", daemon=True).start()
