import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")
application = get_wsgi_application()


if settings.WARM_UP_ENCODER:
    # Load the active model's towers now, not on a shopper's first query (seconds), and any
    # model being activated before it is switched to (embeddings/warm.py).
    from embeddings.warm import start_warm_loop  # after get_wsgi_application(): it imports models

    start_warm_loop()
