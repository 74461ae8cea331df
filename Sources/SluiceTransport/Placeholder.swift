// SluiceTransport
