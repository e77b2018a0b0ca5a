"""Stories, their articles and the outlets that publish them: import and coverage."""
