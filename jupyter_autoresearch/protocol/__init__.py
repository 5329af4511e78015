"""Pure values and parsing: METRIC lines, constraints, the task, run records, the model's answer, errors."""
