"""Training data: turn a folder of images into an imagefolder dataset (``gouache dataset prepare``)."""
