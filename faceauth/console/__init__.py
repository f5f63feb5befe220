"""The web console (/console) and the attendance kiosk (/kiosk): static pages that use the public REST API."""
