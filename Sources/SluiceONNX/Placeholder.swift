// SluiceONNX
