"""Controllers: QObjects without widgets, one job each; they talk to the window through signals."""
