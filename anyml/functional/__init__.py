"""Array API building blocks shared by the layers: special functions and other helpers."""
