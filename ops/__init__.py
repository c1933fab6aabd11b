"""Operations: worker and job heartbeats, broker queue inspection, embedding leases.

Below catalog and embeddings: it imports neither, so both may use it.
"""
