"""pen-server: the reference Private Email Network server (HTTPS API, accounts, guests,
attachments, and the notification outbox that sends plain e-mails over SMTP)."""

__version__ = "0.1.0"
