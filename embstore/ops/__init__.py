"""Operations on a whole store or job: doctor, consistency check, pipeline files, plugin scaffolding."""
