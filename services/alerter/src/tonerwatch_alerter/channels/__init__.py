"""Notification channels: where alert events go after the alerter publishes them (webhooks, mail)."""
