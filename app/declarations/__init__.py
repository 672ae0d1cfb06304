"""Declarations: templates, the firm side, and the recipients ' public side."""
