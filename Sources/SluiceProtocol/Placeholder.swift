// SluiceProtocol
