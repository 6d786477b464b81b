"""Multi-domain synthetic haze: the recipe, its degradations, the depth sources and the pair generator."""
