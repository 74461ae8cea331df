// SluiceConfig
