"""Payload logging: what each inference was asked and answered, as CloudEvents in KServe's logger shape, sent to
CATDOG_PAYLOAD_LOG_URL from a bounded queue off the request path (docs/operations.md "Payload logging")."""
