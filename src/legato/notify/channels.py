"""Sending one message to one channel: Slack (chat.postMessage), email (SMTP), a webhook.

Each sender raises on failure (the outbox retries; OutboundRefused, a webhook the outbound
policy refuses, is not retried); none is ever called from a run.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from legato.notify.rules import parse_channel
from legato.settings import Settings


@dataclass
class Message:
    """What a notification says, whatever the channel."""

    title: str
    text: str
    link: str | None = None
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    blocks: list[dict[str, Any]] | None = None  # Slack only; built from the rest if None
    # (title, http(s) URL) of what the run linked to with artifact.link: a share link, say
    links: list[tuple[str, str]] = field(default_factory=list)

    def plain(self) -> str:
        lines = [self.title, "", self.text]
        if self.error:
            lines += ["", "Error:", self.error]
        for title, url in self.links:
            lines.append(f"{title}: {url}")
        if self.link:
            lines += ["", self.link]
        return "\n".join(lines)

    def slack_blocks(self) -> list[dict[str, Any]]:
        if self.blocks is not None:
            return self.blocks
        body = f"*{_mrkdwn(self.title)}*\n{_mrkdwn(self.text)}"
        for title, url in self.links:
            body += f"\n<{url}|{_mrkdwn(title).replace('|', '/')}>"
        if self.link:
            body += f"\n<{self.link}|Open the run>"
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}}
        ]
        if self.error:
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"```{self.error[:2900]}```"},
                }
            )
        return blocks


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_client(settings: Settings) -> Any:
    """A slack_sdk WebClient for the bot token (``LEGATO_SLACK_API_URL`` for a fake)."""
    try:
        from slack_sdk import WebClient
    except ImportError:  # pragma: no cover - depends on the install
        from legato.errors import ConfigurationError

        raise ConfigurationError(
            "Slack needs the slack_sdk package: pip install 'legato[slack]'"
        ) from None
    if not settings.slack_bot_token:
        from legato.errors import ConfigurationError

        raise ConfigurationError("LEGATO_SLACK_BOT_TOKEN is not set: Slack cannot be used")
    base = settings.slack_api_url
    return WebClient(
        token=settings.slack_bot_token, base_url=base if base.endswith("/") else base + "/"
    )


def send(channel: str, message: Message, settings: Settings) -> dict[str, Any]:
    """Send now; returns what the channel answered worth keeping (Slack: channel and ts)."""
    kind, target = parse_channel(channel)
    if kind == "slack":
        answer = slack_client(settings).chat_postMessage(
            channel=target.lstrip("#") if target.startswith("#") else target,
            text=f"{message.title}: {message.text}"[:3000],
            blocks=message.slack_blocks(),
            unfurl_links=False,
        )
        return {"channel": answer.get("channel"), "ts": answer.get("ts")}
    if kind == "email":
        mail = EmailMessage()
        mail["Subject"] = message.title
        mail["From"] = settings.smtp_from
        mail["To"] = target
        mail.set_content(message.plain())
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=15) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(mail)
        return {}
    from legato.notify.webhook import post_json
    from legato.outbound import Policy

    payload = {
        "title": message.title,
        "text": message.text,
        "link": message.link,
        "error": message.error,
        "links": [{"title": title, "url": url} for title, url in message.links],
        **message.fields,
    }
    return {"status": post_json(target, payload, Policy.parse(settings.outbound_allow))}
