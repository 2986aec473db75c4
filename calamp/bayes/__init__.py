"""Bayesian machinery: variational layers with frozen draws (:mod:`calamp.bayes.vi`), SG-MCMC
samplers on a model's flat weight vector (:mod:`calamp.bayes.samplers`), and the draw store
(:mod:`calamp.bayes.store`) that hands posterior draws to generation."""
