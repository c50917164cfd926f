"""Events: every change a partner app cares about, written in the same transaction as the
change, in one increasing order per time bank; the feed that reads them and the signed
webhooks that deliver them (docs/events.md)."""
