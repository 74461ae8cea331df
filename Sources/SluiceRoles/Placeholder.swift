// SluiceRoles
