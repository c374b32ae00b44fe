package control

// SetAfterTakeState sets the hook CompleteSignIn runs between the sign-in
// state taken and the configuration read (nil: none).
func SetAfterTakeState(f func()) { afterTakeState = f }
