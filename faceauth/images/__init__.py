"""Images given by reference: downloading a photo from a URL safely."""
