"""Marshmallow schemas of the shapes the ingress answers with, by domain: the
OpenAPI document is generated from them (what clients may send is core.schemas)."""
