"""The artifact IO layer: schemas, validated tables, atomic run directories, metadata and ids."""
