"""The quality checks, one class each: the input it makes from the photo and face, one run of its model over
many images, and its verdict with its threshold."""
