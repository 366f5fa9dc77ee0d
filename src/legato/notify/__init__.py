"""Notifications: rules that send run events to Slack, email and webhooks.

Rules (``legato notify add --on failed,crashed --flow lab-pipeline slack:#lab-alerts``) are
matched against the flow runs' state history by a background thread of the server (or of
``legato serve``); each message goes through an outbox table: deduplicated, retried with
backoff, rate-limited per channel, and sent away from the runs, so a failing channel never
fails or slows a run. Failures are logged and listed by ``legato notify log`` and
``GET /api/v1/notifications``.
"""
