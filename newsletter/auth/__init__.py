"""Sign-in by email link and the signed-in session."""
