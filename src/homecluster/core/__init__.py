"""The pure core: the cluster spec an inventory describes, and the plan that brings hosts to it."""
