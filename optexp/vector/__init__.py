"""Many seeds as one vectorized model: `hydra/launcher=vectorized` groups a sweep's jobs
that differ only in `seed` (`optexp.vector.launcher`) and trains each group as one stack
of models (`optexp.vector.group`, `optexp.vector.stack`), with the outputs of separate runs."""
