"""Email: rendering (MJML + Jinja), message building, transports, and sending after commit."""
