"""Email templates staff edit: the published-template store every email is rendered from
(`store`), versions, checks, previews with sample data, and diffs."""
