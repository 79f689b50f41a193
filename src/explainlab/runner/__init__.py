"""Lightning and Hydra glue: builds objects from the config and runs a method end to end."""
