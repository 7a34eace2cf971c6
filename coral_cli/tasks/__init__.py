"""What the shared trainer runs: the retriever and generator `Task`s and the wiring that builds
them from a config (data, model, reward, samplers, objective). It sits above the model packages
(rewards, generator, generation, objectives), which never import it."""
