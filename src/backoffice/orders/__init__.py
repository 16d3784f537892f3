"""Orders: `{prefix}/orders`, taking stock from items and paid by a partner's webhook."""
