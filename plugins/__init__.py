"""Built-in embstore plugins; registered through the embstore entry-point group like any other."""
