"""The seven AI Factory services, one package and one process each."""
