// SluicePlan
