"""Operations that drive DVC, git and GTO: the remote, verification, replay of a tagged model, release."""
