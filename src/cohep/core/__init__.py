"""What every floor uses: the error types, the settings schema, atomic files, progress lines."""
