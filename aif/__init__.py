"""Development tooling of the factory: the `aif` command, local infrastructure, stacks, the demo loop."""
