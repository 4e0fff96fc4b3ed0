"""Marshmallow schemas of what clients may send, by domain: each validates a
request (the ingress's, or a bulk item as a worker takes it) and documents it
in the OpenAPI document. The shapes answered with are the ingress's
(ingress.responses)."""
