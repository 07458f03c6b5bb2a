"""The TCP front door: the seed's TLV protocol served by the REST API's purchase core
(docs/tcp.md). ``manage.py tcpserver`` runs it; ``python -m tcpdoor.client`` talks to it."""
