"""The staff area: templates with versions, edition control, readers, dashboard, audit."""
