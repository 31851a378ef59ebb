"""Search: query strings parsed into a typed, validated `SearchQuery` that every engine compiles."""
