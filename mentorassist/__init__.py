"""MentorAssist WebSocket for backends and clients.

- `Publisher` (mentorassist.publisher): publish notifications to users from a backend.
- `python -m mentorassist`: the same from a shell.
- `NotificationClient` (mentorassist.client): the Python reference client of docs/PROTOCOL.md.
"""

from mentorassist.publisher import (
    BatchResult,
    EntryResult,
    InvalidAttributes,
    InvalidData,
    InvalidId,
    InvalidNotification,
    InvalidTarget,
    InvalidType,
    MentorAssistError,
    Notification,
    NotificationTooLarge,
    Publisher,
    PublishFailed,
    TopicNotConfigured,
)

__all__ = [
    "BatchResult",
    "EntryResult",
    "InvalidAttributes",
    "InvalidData",
    "InvalidId",
    "InvalidNotification",
    "InvalidTarget",
    "InvalidType",
    "MentorAssistError",
    "Notification",
    "NotificationTooLarge",
    "PublishFailed",
    "Publisher",
    "TopicNotConfigured",
]
