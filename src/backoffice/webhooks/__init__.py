"""The webhook gateway: partners' events, received durably and processed in the background."""
