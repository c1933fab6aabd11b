import os

# torch's OpenMP threads busy-wait by default; with two cores shared by a web server, two
# workers and Postgres that spinning cost 1.7x in embedding throughput and second-long
# query latencies (bench/omp_contention.py). It must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from searchsite.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
